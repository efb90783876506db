from chrono_ci.cli import main

main()
