# The central view: fuzz its push decoder, and keep the live page's screenshot.
.PHONY: view-fuzz view-page view-bench
VIEW_FUZZTIME ?= 30s

view-fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeWrite -fuzztime $(VIEW_FUZZTIME) ./view/

# view-page saves the board's screenshot under out/view (needs chromium).
view-page:
	mkdir -p out/view
	$(GO) test -count=1 -run TestLivePage -v -artifacts -outputdir $(CURDIR)/out/view ./view/

# view-bench: the cost of one push (decode and verdicts) in a view that knows 100 agents.
view-bench:
	$(GO) test -run '^$$' -bench BenchmarkPush -benchtime 2s ./view/
