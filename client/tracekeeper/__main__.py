import sys

from tracekeeper.entry import main

sys.exit(main())
