// Implemented in a follow-up commit (hello parser and encoders); see v2.hpp.
