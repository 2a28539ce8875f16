//go:build race

package runtime

// raceBuild is true in a -race build, where the cloned first process is
// off: the compiler instruments the wrapper through which clone_amd64.s
// enters childEntry and the system call functions it calls, and the race
// detector's hooks need a goroutine that process does not have (they fail
// it at random).
const raceBuild = true
