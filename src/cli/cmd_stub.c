#include "cli.h"
int cmd_pretrain(int argc, char **argv) { (void)argc; (void)argv; cli_error("pretrain: not built yet"); return 2; }
int cmd_reconstruct(int argc, char **argv) { (void)argc; (void)argv; cli_error("reconstruct: not built yet"); return 2; }
