//go:build !race

package runtime

// raceBuild: see race_on.go.
const raceBuild = false
