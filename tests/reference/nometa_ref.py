"""The non-square fixture model (12 x 20 images, tests/fixtures/nonsquare,
written by make_fixtures.py) without maec's metadata, as a PyTorch user's
safetensors file of it would be; writes
tests/fixtures/nonsquare/model_nometa.safetensors.

    /usr/bin/python3 tests/reference/nometa_ref.py

maec grad must take the image height and width from X.npy for it and
give the reference's gradients (test_core).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "nonsquare")
t, _ = st.load_file(os.path.join(d, "model.safetensors"))
st.save_file(os.path.join(d, "model_nometa.safetensors"), t)
