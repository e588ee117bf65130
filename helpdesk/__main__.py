"""``python -m helpdesk``: the same as the ``helpdesk`` command."""

from helpdesk.cli import main

if __name__ == "__main__":  # not when a child process imports it as __mp_main__
    main()
