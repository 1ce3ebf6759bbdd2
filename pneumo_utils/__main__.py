import sys

from pneumo_utils.app.cli import main

sys.exit(main())
