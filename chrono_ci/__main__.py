from chrono_ci.cli.app import main

main()
