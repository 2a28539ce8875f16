// Package worker is the agent of a shoal node: it keeps a session to one of
// the managers, receives the tasks assigned to the node and runs each of them
// as a container on the local engine, reporting every change of state back.
//
// Shape (after swarmkit's agent, smaller):
//
//   - session.go: one session at a time to a manager's Dispatcher: Session
//     stream (session ID, manager list), Heartbeat at the period the
//     dispatcher names and status reports on one connection, Assignments
//     and log streams on a second one, so that liveness never queues behind
//     bulk data. Any failure ends the session and the agent fails over to
//     the next manager address it knows.
//   - admission.go: the node's start window (AIMD over start latency and
//     heartbeat lateness); tasks beyond it wait in ACCEPTED.
//   - agent.go: reconciles assignments (COMPLETE sets and INCREMENTAL
//     changes) with the running task goroutines, and on the first COMPLETE
//     set removes the containers of tasks no longer assigned (a restarted
//     agent adopts the others, it does not restart them).
//   - step.go: next, the pure decision of one task's state step: given the
//     task and what the runtime shows of its container, what to do and which
//     status to report. Every status change goes through api.Step, so a task
//     never moves backwards.
//   - task.go: one goroutine per task, a thin loop around next.
//   - reporter.go: one goroutine batching status changes into
//     UpdateTaskStatus calls, coalescing several changes of one task into
//     the latest and retrying on failure.
//   - runtime.go: the Runtime the agent consumes and EngineRuntime, its
//     adapter over *containers.Engine.
//
// Goroutines: Agent.Run starts the reporter, the session loop and the task
// goroutines; all of them stop on Run's context, and Run returns after they
// have. Containers keep running when the agent stops: a restarted agent
// adopts them.
package worker
