"""`python -m rest_hf ...`, which is also what `torchrun -m rest_hf` and `accelerate launch -m rest_hf` run."""

import sys

from .cli import main

sys.exit(main())
