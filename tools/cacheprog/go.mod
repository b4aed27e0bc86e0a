module fairway.local/tools/cacheprog

go 1.22
