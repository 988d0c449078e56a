// What becomes of the connections and persistence templates of a real server that fails or is
// quiesced: IPVS's expire_nodest_conn and expire_quiescent_template sysctls, as settings.

/**
 * IPVS's expire_nodest_conn and expire_quiescent_template sysctls, which the kernel ships at 0
 * (docs/keepalived.md says what each does to a failed or quiesced real server).
 */
export interface ExpirySettings {
  /** A real server leaving the scheduling (failed check, maintenance) has its connections ended at once; else they drain. */
  expireNodestConn: boolean;
  /** A persistence template whose real server is quiesced (weight 0) stops holding its clients there. */
  expireQuiescentTemplate: boolean;
}

export const DEFAULT_EXPIRY: ExpirySettings = { expireNodestConn: false, expireQuiescentTemplate: false };
