from virtserve.cli import main

raise SystemExit(main())
