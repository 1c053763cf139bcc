# dmarc-exporter: the usual targets. `make test` is the command CI runs.
GO ?= go
# Debian packages the tests need (prometheus: promtool and Prometheus,
# prometheus-alertmanager: for the rule and end-to-end tests;
# dovecot-imapd: the IMAP server of the IMAP source tests, which start
# their own instances on 127.0.0.1; chromium: the browser the report
# explorer's tests drive, headless, with fonts-liberation, which it only
# recommends; postgresql: the second archive engine, whose tests start
# throwaway clusters); `make deps` installs the missing ones
# when run as root and fails with their names otherwise.
APT_PACKAGES ?= prometheus prometheus-alertmanager dovecot-imapd chromium fonts-liberation postgresql
FUZZTIME ?= 60s

.PHONY: all build test deps vet style checkrules fuzz bench docker

all: build

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X github.com/prometheus/common/version.Version=$(VERSION) \
	-X github.com/prometheus/common/version.Revision=$(REVISION)

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o dmarc-exporter ./cmd/dmarc-exporter

deps:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing || exit 1; \
			case "$$missing" in *dovecot*) service dovecot stop >/dev/null 2>&1 || true;; esac; \
			case "$$missing" in *postgresql*) service postgresql stop >/dev/null 2>&1 || true;; esac; \
		else \
			echo "missing Debian packages:$$missing (run make deps as root)"; exit 1; \
		fi; \
	fi

# The IMAP, browser and PostgreSQL tests fail rather than skip when
# Dovecot, chromium or PostgreSQL is missing.
test: deps style vet
	DMARC_EXPORTER_REQUIRE_DOVECOT=1 DMARC_EXPORTER_REQUIRE_CHROMIUM=1 DMARC_EXPORTER_REQUIRE_POSTGRES=1 $(GO) test -count=1 ./...

vet:
	$(GO) vet ./...

checkrules:
	promtool check rules rules/dmarc.rules.yml
	cd rules && promtool test rules dmarc.test.yml

style:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) mod tidy -diff

fuzz:
	$(GO) test ./report -run '^$$' -fuzz '^FuzzAggregateDecoder$$' -fuzztime $(FUZZTIME)
	$(GO) test ./report -run '^$$' -fuzz '^FuzzWalk$$' -fuzztime $(FUZZTIME)
	$(GO) test ./report -run '^$$' -fuzz '^FuzzMail$$' -fuzztime $(FUZZTIME)
	$(GO) test ./report -run '^$$' -fuzz '^FuzzScanner$$' -fuzztime $(FUZZTIME)
	$(GO) test ./report -run '^$$' -fuzz '^FuzzTLSReport$$' -fuzztime $(FUZZTIME)
	$(GO) test ./report -run '^$$' -fuzz '^FuzzFailure$$' -fuzztime $(FUZZTIME)
	$(GO) test ./source -run '^$$' -fuzz '^FuzzMbox$$' -fuzztime $(FUZZTIME)
	$(GO) test ./enrich -run '^$$' -fuzz '^FuzzRegistrableDomain$$' -fuzztime $(FUZZTIME)

bench:
	$(GO) test ./report ./collector ./enrich ./source ./explorer -run '^$$' -bench . -benchmem -benchtime 1x -timeout 1h
	$(GO) test ./cmd/dmarc-exporter -run '^$$' -bench 'BenchmarkStart|BenchmarkImport' -benchtime 1x -timeout 1h

docker:
	docker build -t dmarc-exporter .
