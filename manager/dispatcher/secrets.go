package dispatcher

import (
	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
)

// viewer reads the store.
type viewer interface {
	View(fn func(raftstore.ReadTx))
}

// withSecrets attaches to every UPDATE of changes the secrets and configs
// its task refers to, data included, as read from store now. This is the
// one way a secret's data leaves the managers, and only towards the node a
// task using it is assigned to. A reference to one that no longer exists
// (removed after its service moved on, while an old task still runs) is
// left out: the agent refuses to create such a task's container.
func withSecrets(store viewer, changes []*api.AssignmentChange) {
	var need []*api.AssignmentChange
	for _, c := range changes {
		cs := c.GetTask().GetSpec().GetContainer()
		if c.GetAction() == api.AssignmentChange_UPDATE && len(cs.GetSecrets())+len(cs.GetConfigs()) > 0 {
			need = append(need, c)
		}
	}
	if len(need) == 0 {
		return
	}
	store.View(func(tx raftstore.ReadTx) {
		for _, c := range need {
			cs := c.GetTask().GetSpec().GetContainer()
			c.Secrets, c.Configs = nil, nil
			for _, r := range cs.GetSecrets() {
				if s := tx.GetSecret(r.GetSecretId()); s != nil {
					c.Secrets = append(c.Secrets, s)
				}
			}
			for _, r := range cs.GetConfigs() {
				if x := tx.GetConfig(r.GetConfigId()); x != nil {
					c.Configs = append(c.Configs, x)
				}
			}
		}
	})
}
