# The view's live page as a picture: the board's screenshot in headless Chromium (Debian's
# chromium, scripts/deps/view.txt). The view's tests are in `go test ./view/` (make check),
# its fuzzing in mk/fuzz.mk, its benchmarks in mk/bench.mk.

.PHONY: view-page

## view-page: save the board's screenshot under out/view (chromium)
view-page:
	mkdir -p out/view
	$(GO) test -count=1 -run TestLivePage -v -artifacts -outputdir $(CURDIR)/out/view ./view/
