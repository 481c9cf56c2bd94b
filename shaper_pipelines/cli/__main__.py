import sys

from shaper_pipelines.cli import main

sys.exit(main())
