"""`python -m v1sweep.cli ...` is the `v1sweep` command."""
import sys

from v1sweep.cli.app import main

sys.exit(main())
