// The forwarding methods lvsd carries out. Direct routing (-g) and tunnelling (-i) join when the
// layer-2 data plane brings them; until then the service table refuses them.
import './masq.js';
