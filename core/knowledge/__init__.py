"""Domain knowledge: the radiological signs of a slice and the decision that uses them with a direction fixed
by that knowledge, not learnt from one source's labels."""
