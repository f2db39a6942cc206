from sentinel_cli.app import main

main()
