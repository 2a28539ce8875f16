package controlapi

import (
	"context"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/api"
)

func TestNetworksSecretsConfigs(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestServer(t)
	grpcErr := func(err error) error { return api.FromGRPC(err) }

	_, err := s.CreateNetwork(ctx, &api.CreateNetworkRequest{Spec: &api.NetworkSpec{Annotations: &api.Annotations{Name: "app"},
		Ipam: &api.IPAMOptions{Configs: []*api.IPAMConfig{{Subnet: "10.1.0.0/24", Gateway: "10.2.0.1"}}}}})
	wantErr(t, grpcErr(err), api.ErrInvalidArgument, `gateway "10.2.0.1" is not an address in 10.1.0.0/24`)
	_, err = s.CreateNetwork(ctx, &api.CreateNetworkRequest{Spec: &api.NetworkSpec{Annotations: &api.Annotations{Name: "app"}, DriverConfig: &api.Driver{Name: "bridge"}}})
	wantErr(t, grpcErr(err), api.ErrInvalidArgument, `driver "bridge" is not supported`)
	net, err := s.CreateNetwork(ctx, &api.CreateNetworkRequest{Spec: &api.NetworkSpec{Annotations: &api.Annotations{Name: "app"}}})
	if err != nil || net.Network.Spec.DriverConfig.GetName() != "overlay" {
		t.Fatalf("CreateNetwork: %v %v", net, err)
	}
	_, err = s.CreateNetwork(ctx, &api.CreateNetworkRequest{Spec: &api.NetworkSpec{Annotations: &api.Annotations{Name: "app"}}})
	wantErr(t, grpcErr(err), api.ErrConflict, "network app already exists")

	_, err = s.CreateSecret(ctx, &api.CreateSecretRequest{Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: "pw"}}})
	wantErr(t, grpcErr(err), api.ErrInvalidArgument, "secret pw: data is required")
	_, err = s.CreateSecret(ctx, &api.CreateSecretRequest{Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: "pw"}, Data: make([]byte, maxDataBytes+1)}})
	wantErr(t, grpcErr(err), api.ErrInvalidArgument, "over the limit")
	sec, err := s.CreateSecret(ctx, &api.CreateSecretRequest{Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: "pw"}, Data: []byte("hunter2")}})
	if err != nil || sec.Secret.Spec.Data != nil {
		t.Fatalf("CreateSecret must not return data: %v %v", sec, err)
	}
	cfg, err := s.CreateConfig(ctx, &api.CreateConfigRequest{Spec: &api.ConfigSpec{Annotations: &api.Annotations{Name: "conf"}, Data: []byte("x=1")}})
	if err != nil || string(cfg.Config.Spec.Data) != "x=1" {
		t.Fatalf("CreateConfig: %v %v", cfg, err)
	}
	// Swarm's names for these allow dots (server.conf), not spaces or a
	// leading dot.
	if _, err := s.CreateConfig(ctx, &api.CreateConfigRequest{Spec: &api.ConfigSpec{Annotations: &api.Annotations{Name: "server.conf"}, Data: []byte("x")}}); err != nil {
		t.Fatalf("config server.conf: %v", err)
	}
	for _, bad := range []string{".conf", "a b", "x."} {
		_, err := s.CreateSecret(ctx, &api.CreateSecretRequest{Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: bad}, Data: []byte("x")}})
		wantErr(t, grpcErr(err), api.ErrInvalidArgument, "is invalid")
	}

	// Labels change; data does not.
	_, err = s.UpdateSecret(ctx, &api.UpdateSecretRequest{SecretId: "pw", SecretVersion: sec.Secret.Meta.Version,
		Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: "pw"}, Data: []byte("other")}})
	wantErr(t, grpcErr(err), api.ErrInvalidArgument, "not the data")
	up, err := s.UpdateSecret(ctx, &api.UpdateSecretRequest{SecretId: "pw", SecretVersion: sec.Secret.Meta.Version,
		Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: "pw", Labels: map[string]string{"env": "prod"}}}})
	if err != nil || up.Secret.Spec.Annotations.Labels["env"] != "prod" {
		t.Fatalf("UpdateSecret: %v %v", up, err)
	}
	_, err = s.UpdateSecret(ctx, &api.UpdateSecretRequest{SecretId: "pw", SecretVersion: sec.Secret.Meta.Version, Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: "pw"}}})
	wantErr(t, grpcErr(err), api.ErrConflict, "out of sequence")

	spec := replicated("web", "busybox", 1)
	spec.Task.Networks = []*api.NetworkAttachmentConfig{{Target: "app"}}
	spec.Task.Container.Secrets = []*api.SecretReference{{SecretName: "pw"}}
	spec.Task.Container.Configs = []*api.ConfigReference{{ConfigName: "conf"}}
	if _, err := s.createService(ctx, &api.CreateServiceRequest{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	_, err = s.RemoveNetwork(ctx, &api.RemoveNetworkRequest{NetworkId: "app"})
	wantErr(t, grpcErr(err), api.ErrFailedPrecondition, "network app is in use by service web")
	_, err = s.RemoveSecret(ctx, &api.RemoveSecretRequest{SecretId: "pw"})
	wantErr(t, grpcErr(err), api.ErrFailedPrecondition, "secret pw is in use by service web")
	_, err = s.RemoveConfig(ctx, &api.RemoveConfigRequest{ConfigId: "conf"})
	wantErr(t, grpcErr(err), api.ErrFailedPrecondition, "config conf is in use by service web")

	if _, err := s.removeService(ctx, &api.RemoveServiceRequest{ServiceId: "web"}); err != nil {
		t.Fatal(err)
	}
	for _, rm := range []func() error{
		func() error { _, err := s.RemoveNetwork(ctx, &api.RemoveNetworkRequest{NetworkId: "app"}); return err },
		func() error { _, err := s.RemoveSecret(ctx, &api.RemoveSecretRequest{SecretId: "pw"}); return err },
		func() error { _, err := s.RemoveConfig(ctx, &api.RemoveConfigRequest{ConfigId: "conf"}); return err },
		func() error {
			_, err := s.RemoveConfig(ctx, &api.RemoveConfigRequest{ConfigId: "server.conf"})
			return err
		},
	} {
		if err := rm(); err != nil {
			t.Fatal(err)
		}
	}
	l, _ := s.ListSecrets(ctx, &api.ListSecretsRequest{})
	n, _ := s.ListNetworks(ctx, &api.ListNetworksRequest{})
	c, _ := s.ListConfigs(ctx, &api.ListConfigsRequest{})
	if len(l.Secrets)+len(n.Networks)+len(c.Configs) != 0 {
		t.Fatalf("left: %v %v %v", l, n, c)
	}
	_, err = s.GetSecret(ctx, &api.GetSecretRequest{SecretId: "pw"})
	if e := grpcErr(err); e == nil || !strings.Contains(e.Error(), "secret pw not found") {
		t.Fatalf("GetSecret after remove: %v", e)
	}
}
