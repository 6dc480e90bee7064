// Package daemon is nymvpnd: it wires the control API (daemon/control), the
// tunnel state machine (daemon/tunnelstate), the persisted settings
// (daemon/settings), the tunnel modes (modes/fast) and the system
// integration (platform) into one service.
//
//	nymvpn CLI / app ──HTTP over Unix socket──▶ control.Server ──▶ Backend (this package)
//	                                            control.Hub ◀── state, settings, traffic
//	Backend ──▶ tunnelstate.Machine ──▶ Connector (fast mode on a kernel TUN)
//	                                 └─▶ System (platform: routes, rules, DNS)
//
// The state directory holds settings.json, target.json (what the user last
// asked for, so a crash or reboot reconnects), platform/ (the journal of
// system changes, undone at the next start after a crash) and wallet/ (the
// account and its ticketbooks, account.go).
package daemon
