"""python -m demo [--exit] [--local]: see demo/story.py."""

from __future__ import annotations

import sys

from demo.story import main

if __name__ == "__main__":
    sys.exit(main())
