//go:build linux

package testnet

import "fmt"

// The nftables objects CutPath manages inside a site's namespace: one set of peer
// addresses, and rules that drop every packet from or to them, silently.
const (
	nftPathTable = "testnet_path"
	nftPathSet   = "cut_peers"
)

// CutPath makes a site unreachable from one edge (or host) while every other node still
// reaches it: inside the site's namespace every packet from or to the peer's address is
// dropped, as when the peer's transit provider loses its route to the site. The site and
// the peer are otherwise untouched, so this is a partial partition, not a blackhole.
func (n *Net) CutPath(site, peer string) error { return n.path(site, peer, "add") }

// HealPath undoes CutPath.
func (n *Net) HealPath(site, peer string) error { return n.path(site, peer, "delete") }

func (n *Net) path(site, peer, op string) error {
	nd, err := n.node(site, roleSite)
	if err != nil {
		return err
	}
	p, err := n.node(peer, roleEdge, roleHost)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !nd.pathReady {
		ruleset := "add table inet " + nftPathTable + "; " +
			"add set inet " + nftPathTable + " " + nftPathSet + " { type ipv4_addr; }; " +
			"add chain inet " + nftPathTable + " input { type filter hook input priority 0; policy accept; }; " +
			"add chain inet " + nftPathTable + " output { type filter hook output priority 0; policy accept; }; " +
			"add rule inet " + nftPathTable + " input ip saddr @" + nftPathSet + " drop; " +
			"add rule inet " + nftPathTable + " output ip daddr @" + nftPathSet + " drop"
		if _, err := n.Exec(site, "nft", ruleset); err != nil {
			return fmt.Errorf("set up path cuts in site %q: %w", site, err)
		}
		nd.pathReady = true
	}
	element := "{ " + p.addrs[0].String() + " }"
	if _, err := n.Exec(site, "nft", op, "element", "inet", nftPathTable, nftPathSet, element); err != nil {
		return fmt.Errorf("%s %s in the cut peers of site %q: %w", op, peer, site, err)
	}
	return nil
}
