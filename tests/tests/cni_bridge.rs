//! berth-bridge: the whole node in a fresh netns, pods as further netns (no uplink).

use berth_tests::netns::Node;

/// The fixture itself: a node netns with a bridge, two pods wired by hand, ping
/// over the bridge, and nothing left afterwards.
#[test]
fn fixture_node_and_pods_talk_over_a_hand_made_bridge() {
    let Some(node) = Node::new() else { return };
    let (a, b) = (node.pod(), node.pod());
    node.sh_ok("ip link add br0 type bridge && ip addr add 10.99.0.1/24 dev br0 && ip link set br0 up");
    for (i, p) in [&a, &b].into_iter().enumerate() {
        let n = i + 2;
        node.sh_ok(&format!(
            "ip link add vh{n} type veth peer name eth0 netns {} && ip link set vh{n} master br0 up",
            p.path().display()
        ));
        p.sh_ok(&format!("ip addr add 10.99.0.{n}/24 dev eth0 && ip link set eth0 up"));
    }
    assert!(a.ping("10.99.0.3"), "pod a -> pod b");
    assert!(b.ping("10.99.0.1"), "pod b -> node (bridge)");
    assert_eq!(a.addrs("eth0"), vec!["10.99.0.2/24".to_string()]);
    assert_eq!(node.links_of("veth").len(), 2);
}
