/* The command-line front end: a table of subcommands, each a thin client of
 * the library, and a small option parser shared by all of them. */
#ifndef MAEC_CLI_H
#define MAEC_CLI_H
#include "maec.h"

typedef enum { OPT_STR, OPT_INT, OPT_FLOAT, OPT_DOUBLE, OPT_BOOL, OPT_U64 } opt_kind;

typedef struct {
    const char *name; /* without the leading "--", words joined by '-' */
    opt_kind kind;
    void *dst;        /* char**, int*, float*, double*, int* (bool), uint64_t* */
    const char *help;
    double min, max;  /* range for numbers (ignored when min > max) */
    int seen;
} cli_opt;

/* Parse argv (after the subcommand name). '--a-b' and '--a_b' are the same;
 * '--name value' and '--name=value' both work. Positional arguments are
 * collected in pos (up to maxpos). On error prints one line and returns -1;
 * on --help prints usage and returns 1. */
int cli_parse(const char *cmd, const char *usage, int argc, char **argv, cli_opt *opts,
              int nopts, char **pos, int maxpos, int *npos);
/* Before parsing: the value of --name (as '--name value' or '--name=value',
 * '_' for '-' allowed) in argv, NULL if absent or without a value; whether
 * --help or -h is there. */
const char *cli_find(int argc, char **argv, const char *name);
int cli_wants_help(int argc, char **argv);
/* the command runs a model: its --help lists --device and --tf32 (taken
 * out of argv by main before the command parses it) */
void cli_set_model_command(int on);
/* print "maec: error: ..." */
void cli_error(const char *fmt, ...);
int cli_fail(const maec_error *err);
/* --threads n (0: the default): set, with a one-line warning when n is
 * beyond the cores this process may run on (the threads would only wait
 * for each other); returns the number of threads now in use. */
int cli_set_threads(const char *cmd, int n);
/* true if option name was given */
int cli_seen(const cli_opt *opts, int nopts, const char *name);
/* an image size: "N" (square), "HxW" or "H,W"; 0, or -1 when it is none */
int cli_parse_size(const char *s, int *h, int *w);

int cmd_grad(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_pretrain(int argc, char **argv);
int cmd_reconstruct(int argc, char **argv);
int cmd_knn(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_linprobe(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_report(int argc, char **argv);

/* the training commands' side of the report (cmd_report.c): a record of
 * this session (command, version, device, CPU, threads, BLAS) appended to
 * DIR/machine.json (started anew when fresh: not a resumed run), quietly skipped when it cannot be written; and
 * DIR/report.html rewritten from what DIR holds (--report), a warning (and
 * non-zero) when it cannot be */
void cli_report_session(const char *dir, const char *command, int fresh);
int cli_report_update(const char *dir);
/* the processes of this run (mpirun -np N; one without it) */
maec_comm *cli_comm(void);
#endif
