from clickpulse.stack.cli import main

main()
