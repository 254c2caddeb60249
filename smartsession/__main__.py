import sys

from smartsession.cli import main

sys.exit(main())
