from icsguard.cli import main

main()
