#!/usr/bin/env bash
# Regenerates api/*.pb.go and api/*_grpc.pb.go from api/*.proto with stock
# protoc, protoc-gen-go and protoc-gen-go-grpc. `make check` runs this and
# fails if the committed code differs, so run it after editing a .proto.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$HOME/go/bin:$(go env GOPATH)/bin:$PATH"
for tool in protoc protoc-gen-go protoc-gen-go-grpc; do
	command -v "$tool" >/dev/null || {
		echo "gen.sh: $tool not found (GOFLAGS= go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12 google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2)" >&2
		exit 1
	}
done
protoc -I . -I /usr/include \
	--go_out=. --go_opt=paths=source_relative \
	--go-grpc_out=. --go-grpc_opt=paths=source_relative \
	*.proto
