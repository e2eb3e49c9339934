from netcli.cli import main

main()
