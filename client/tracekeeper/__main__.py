from tracekeeper.cli import main

main()
