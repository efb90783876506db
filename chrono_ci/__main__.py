from chrono_ci.cli.launch import main

main()
