from adapters_kit.cli import main

raise SystemExit(main())
