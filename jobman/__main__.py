from jobman.cli import main

main()
