//go:build linux

package testnet

import (
	"fmt"
	"strconv"
)

// BlackholeSite takes a whole site off the network: its bridge port goes down, and
// every packet to or from any of its hosts vanishes, as when the datacenter loses power.
func (n *Net) BlackholeSite(site string) error {
	nd, err := n.node(site, roleSite)
	if err != nil {
		return err
	}
	return n.setPort(nd, false)
}

// HealSite brings a blackholed site back.
func (n *Net) HealSite(site string) error {
	nd, err := n.node(site, roleSite)
	if err != nil {
		return err
	}
	return n.setPort(nd, true)
}

// CutUplink takes an edge (or another host) off the network: the host keeps running
// and sees every site fail at once, which is what an agent must not mistake for a loss
// of every site.
func (n *Net) CutUplink(name string) error {
	nd, err := n.node(name, roleEdge, roleHost)
	if err != nil {
		return err
	}
	return n.setPort(nd, false)
}

// HealUplink restores an edge's (or another host's) link.
func (n *Net) HealUplink(name string) error {
	nd, err := n.node(name, roleEdge, roleHost)
	if err != nil {
		return err
	}
	return n.setPort(nd, true)
}

// The nftables objects DropTCPPort manages inside a site's namespace: one set of
// ports, one rule that silently drops incoming TCP to them.
const (
	nftTable = "testnet"
	nftSet   = "dropped_tcp"
)

// DropTCPPort makes one service of a site fail while the rest keeps answering: incoming
// TCP to port is dropped without a reset, so clients time out, as with a hung server.
func (n *Net) DropTCPPort(site string, port int) error {
	return n.tcpPort(site, port, "add")
}

// AllowTCPPort undoes DropTCPPort.
func (n *Net) AllowTCPPort(site string, port int) error {
	return n.tcpPort(site, port, "delete")
}

func (n *Net) tcpPort(site string, port int, op string) error {
	if port < 1 || port > 65535 {
		return fmt.Errorf("testnet %s: TCP port %d out of range 1-65535", n.prefix, port)
	}
	nd, err := n.node(site, roleSite)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !nd.nftReady {
		ruleset := "add table inet " + nftTable + "; " +
			"add set inet " + nftTable + " " + nftSet + " { type inet_service; }; " +
			"add chain inet " + nftTable + " input { type filter hook input priority 0; policy accept; }; " +
			"add rule inet " + nftTable + " input tcp dport @" + nftSet + " drop"
		if _, err := n.Exec(site, "nft", ruleset); err != nil {
			return fmt.Errorf("set up nftables in site %q: %w", site, err)
		}
		nd.nftReady = true
	}
	element := "{ " + strconv.Itoa(port) + " }"
	if _, err := n.Exec(site, "nft", op, "element", "inet", nftTable, nftSet, element); err != nil {
		return fmt.Errorf("%s TCP port %d in the drop set of site %q: %w", op, port, site, err)
	}
	return nil
}
