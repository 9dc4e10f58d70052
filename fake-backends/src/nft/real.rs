//! Running command sequences against the real `nft` in a throw-away network
//! namespace, for differential tests of the simulator.
