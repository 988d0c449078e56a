// The forwarding methods lvsd's core carries out. Which of them a running lvsd accepts is its
// data plane's to say (ForwardingCapability): direct routing needs a layer-2 one.
import './masq.js';
import './tunnel.js';
import './route.js';
