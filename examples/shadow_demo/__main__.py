"""`python -m shadow_demo`: the story `make demo` tells."""

from .demo import main

raise SystemExit(main())
