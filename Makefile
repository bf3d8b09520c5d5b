# tabby — the two commands a new user needs:
#   make demo   runs the main job (the lab demo)
#   make test   installs the Debian packages the tests need, then runs every test
GO ?= go
# -short keeps slow scale tests out; run them with `make test-long`.
TESTFLAGS ?= -race -short -timeout 25m

.PHONY: test test-long demo deps bench fmt vet

deps:
	@./.ci/install-deps

test: deps
	$(GO) test $(TESTFLAGS) ./...

test-long: deps
	$(GO) test -race -timeout 60m ./...

demo: deps
	$(GO) run ./examples/lab

# No test timeout: the services backends' scale benchmarks alone need more
# than go test's default 10 minutes (their READMEs run them with -timeout 30m-60m).
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -timeout 0 ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...
