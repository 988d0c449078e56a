// The forwarding methods lvsd carries out. Direct routing (-g) joins when the layer-2 data plane
// brings it; until then the service table refuses it.
import './masq.js';
import './tunnel.js';
