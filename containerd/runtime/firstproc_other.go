//go:build !amd64

package runtime

// The first process without a Go runtime needs clone3VM, written for amd64
// only: elsewhere every container starts through the Go init.
const cloneVMSupported = false

type cloneArgs struct {
	flags, pidfd, childTID, parentTID, exitSignal, stack, stackSize, tls, setTID, setTIDSize, cgroup uint64
}

func clone3VM(args *cloneArgs, size uintptr, p *childProg) (pid uintptr, errno uintptr) {
	panic("clone3VM: not on this architecture")
}

func trampolineELF() []byte { return nil }
