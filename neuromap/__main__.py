from neuromap.cli import main

# Guarded: `neuromap train --workers N` starts worker processes that import this module again.
if __name__ == "__main__":
    main()
