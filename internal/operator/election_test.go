package operator

import (
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

// Each shard leads under a lease of its own; the main manager of a sharded install (objects
// without a shard label) keeps the lease of the unsharded install it replaces.
func TestLeaderElectionIDPerShard(t *testing.T) {
	id := func(sel string) string {
		t.Helper()
		s, err := labels.Parse(sel)
		if err != nil {
			t.Fatal(err)
		}
		return leaderElectionID(s)
	}
	if got := id("!" + ShardLabel); got != unshardedElectionID {
		t.Errorf("main manager of a sharded install: %s, want %s", got, unshardedElectionID)
	}
	one, two := id(ShardLabel+" in (shard1)"), id(ShardLabel+" in (shard2)")
	if one == two || one == unshardedElectionID || two == unshardedElectionID {
		t.Errorf("shards share a lease: %s, %s", one, two)
	}
	if again := id(ShardLabel + "  in  ( shard1 )"); again != one {
		t.Errorf("the same selector spelt differently: %s, want %s", again, one)
	}
}
