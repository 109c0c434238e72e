pub struct Fleet;
