from sms_gateway.cli import main

main()
