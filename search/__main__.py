"""``python -m search``: the same as the ``search`` console script."""
from search.cli import main

main()
