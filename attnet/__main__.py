from attnet.cli import main

main()
