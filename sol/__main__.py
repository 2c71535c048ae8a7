from sol.cli import main

raise SystemExit(main())
