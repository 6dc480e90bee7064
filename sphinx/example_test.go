package sphinx_test

import (
	"crypto/rand"
	"fmt"
	"time"

	"github.com/nymvpn/nymvpn/sphinx"
)

// A client sends one packet over four hops and gets a reply through a SURB.
func Example() {
	g := sphinx.RegularGeometry()
	var nodes []*sphinx.Node
	var route []sphinx.Hop
	for i := range sphinx.RouteHops {
		key, _ := sphinx.GenerateKey(rand.Reader)
		node, _ := sphinx.NewNode(key) // regular and ack geometries
		nodes = append(nodes, node)
		route = append(route, sphinx.Hop{ID: sphinx.NodeID{byte(i)}, PublicKey: key.Public(), Delay: 15 * time.Millisecond})
	}

	// Forward: the exit gateway (last hop) gets the message and recipient.
	pkt, _ := g.NewPacket(rand.Reader, route, &sphinx.Destination{Recipient: sphinx.Recipient{0xee}}, []byte("hello"))
	fmt.Println("packet bytes:", len(pkt))
	var res sphinx.Result
	for _, n := range nodes {
		var err error
		if res, err = n.Unwrap(pkt, nil); err != nil {
			panic(err)
		}
		pkt = res.Packet // relays: forward res.Packet to res.NextHop after res.Delay
	}
	fmt.Printf("final: %q for %x\n", res.Payload, res.Recipient[:1])

	// Reply: the client makes a SURB, keeps the keys, the exit uses the SURB.
	surb, keys, _ := g.NewSURB(rand.Reader, route, &sphinx.Destination{Recipient: sphinx.Recipient{0xcc}, SURBID: sphinx.SURBID{1}})
	reply, _ := g.NewPacketFromSURB(surb, []byte("hi back"))
	for _, n := range nodes {
		res, _ = n.Unwrap(reply, nil)
		reply = res.Packet
	}
	msg, err := g.DecryptReply(keys, res.Payload)
	fmt.Printf("reply: %q (SURB %x, err %v)\n", msg, res.SURBID[:1], err)
	// Output:
	// packet bytes: 2413
	// final: "hello" for ee
	// reply: "hi back" (SURB 01, err <nil>)
}
