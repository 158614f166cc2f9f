import sys

from tailgan.cli import main

sys.exit(main())
