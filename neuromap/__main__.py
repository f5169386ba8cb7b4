from neuromap.cli import main

main()
