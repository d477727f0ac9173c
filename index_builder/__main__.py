"""``python -m index_builder`` = ``synesthete-index``."""

import sys

from index_builder.cli import main

if __name__ == "__main__":
    sys.exit(main())
